//! The OpenAPI 3.1 document, assembled from the handlers' annotations, and its docs UI.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

/// The parts of the document that no handler describes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "shop",
        description = "E-commerce order API: accounts, catalog, orders that never oversell, \
                       asynchronous payments. Errors are RFC 9457 `application/problem+json`.\n\n\
                       Real time: Socket.IO (v4) namespaces `/orders` and `/payment`, event \
                       `status`; authenticate the handshake with `auth: {token}`, an \
                       `Authorization: Bearer` header or `?token=`. `/orders` carries \
                       `OrderResponse`, `/payment` carries `PaymentEvent`.",
    ),
    modifiers(&BearerAuth),
    components(schemas(crate::error::Problem, crate::payments::PaymentEvent)),
    tags(
        (name = "auth", description = "Accounts and sign-in"),
        (name = "products", description = "The catalog"),
        (name = "orders", description = "Placing, reading and cancelling orders"),
        (name = "admin", description = "The payment queue"),
        (name = "service", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Finishes the generated document: what every operation can answer beyond its own
/// statuses (filled in by the router once every route is merged).
pub fn finish(_spec: &mut utoipa::openapi::OpenApi) {}
