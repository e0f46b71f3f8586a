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
    paths(crate::images::routes::get_media),
    components(schemas(
        crate::error::Problem,
        crate::payments::PaymentEvent,
        crate::pagination::SortOrder,
        crate::products::dto::ProductSortParam,
        crate::users::UserSortParam,
        crate::orders::dto::OrderSortParam,
        crate::orders::OrderStatus,
    )),
    tags(
        (name = "auth", description = "Accounts and sign-in"),
        (name = "products", description = "The catalog"),
        (name = "categories", description = "The catalog's tree of categories"),
        (name = "orders", description = "Placing, reading and cancelling orders"),
        (name = "events", description = "The event log: every change to an order, a payment or the catalog"),
        (name = "webhooks", description = "Endpoints that receive events as signed HTTP POSTs, and their delivery log"),
        (name = "admin", description = "Accounts, the job queues and the stock audit"),
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

/// A problem answer any operation of a kind may give, shared through `components`.
const SHARED: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "Malformed request: bad JSON, a wrong JSON type, a malformed path or query parameter or header (`malformed_json`, `invalid_body`, `invalid_path`, `invalid_query`, ...)",
    ),
    (
        "401",
        "Unauthorized",
        "Missing, invalid or expired token (`unauthorized`)",
    ),
    ("404", "NotFound", "No such resource (`not_found`)"),
    (
        "413",
        "PayloadTooLarge",
        "The body is larger than 1 MiB (`payload_too_large`)",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body is not `application/json` (`unsupported_media_type`)",
    ),
    (
        "422",
        "ValidationFailed",
        "A field or parameter breaks a rule; `errors` names each (`validation_failed`)",
    ),
    (
        "429",
        "RateLimited",
        "Too many requests from this address (`rate_limited`); see `Retry-After`",
    ),
    (
        "503",
        "Unavailable",
        "A dependency is down or busy (`service_unavailable`), or the request took longer than `REQUEST_TIMEOUT` (`request_timeout`)",
    ),
];

/// Finishes the generated document once every route is merged: each operation lists the
/// statuses every operation of its kind can answer, query parameters may be empty, and
/// links lead from what a POST creates to the operations on it.
pub fn finish(spec: &mut utoipa::openapi::OpenApi) {
    share_problem_responses(spec.components.get_or_insert_with(Default::default));
    for (path, item) in spec.paths.paths.iter_mut() {
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            allow_empty_query_values(operation);
            add_shared_statuses(path, operation);
        }
    }
    let product_ops = [
        "get_product",
        "put_product",
        "patch_product",
        "delete_product",
    ];
    link(spec, "/products", "201", "id", &product_ops);
    let order_ops = ["get_order", "cancel_order", "confirm_payment"];
    link(spec, "/orders", "201", "id", &order_ops);
    let webhook_ops = [
        "get_endpoint",
        "patch_endpoint",
        "delete_endpoint",
        "rotate_secret",
        "list_deliveries",
    ];
    link(spec, "/webhooks", "201", "id", &webhook_ops);
    describe_webhook(spec);
}

/// The request every webhook endpoint receives, under the document's `webhooks`.
fn describe_webhook(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{
        HttpMethod, PathItem, PathsBuilder, Ref, Required,
        content::Content,
        path::{OperationBuilder, ParameterBuilder, ParameterIn},
        request_body::RequestBodyBuilder,
        response::Response,
        schema::{ObjectBuilder, Type},
    };

    let header = |name: &str, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build()
    };
    let operation = OperationBuilder::new()
        .operation_id(Some("webhook_event"))
        .tag("webhooks")
        .summary(Some("An event, POSTed to each endpoint that wants it"))
        .description(Some(
            "Sent for every event an endpoint's `events` match, at least once: dedupe by \
             `Shop-Event-Id`; order between events is not promised. Verify \
             `Shop-Signature` with the endpoint's secret: `v1` is the hex HMAC-SHA256 of \
             `<t>.<body>`, and `t` (unix seconds) should be recent.",
        ))
        .parameter(header("Shop-Event-Id", "The event's `id`"))
        .parameter(header("Shop-Event-Type", "The event's `type`"))
        .parameter(header(
            "Shop-Signature",
            "`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`",
        ))
        .request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("Event"))),
                )
                .required(Some(Required::True))
                .build(),
        ))
        .response(
            "2XX",
            Response::new(
                "Received. A timeout (`WEBHOOK_TIMEOUT`), a connection error, 408, 429 or \
                 5xx is retried with exponential backoff and full jitter; any other answer \
                 fails the delivery at once.",
            ),
        )
        .build();
    spec.webhooks = Some(
        PathsBuilder::new()
            .path("event", PathItem::new(HttpMethod::Post, operation))
            .build(),
    );
}

/// Puts the [`SHARED`] problem answers under `components/responses`.
fn share_problem_responses(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::{
        Content, Ref, RefOr, ResponseBuilder,
        header::HeaderBuilder,
        schema::{Object, Schema, Type},
    };

    for (status, name, description) in SHARED {
        let mut response = ResponseBuilder::new().description(*description).content(
            "application/problem+json",
            Content::new(Some(Ref::from_schema_name("Problem"))),
        );
        if *status == "429" {
            let seconds = Schema::Object(Object::with_type(Type::Integer));
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(RefOr::T(seconds)))
                    .description(Some("Seconds to wait before trying again"))
                    .build(),
            );
        }
        components
            .responses
            .insert((*name).to_owned(), RefOr::T(response.build()));
    }
}

/// An empty query parameter counts as absent (`?skip=`). utoipa has no field for
/// `allowEmptyValue`; its extensions are written out as they are.
fn allow_empty_query_values(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::{RefOr, path::ParameterIn};

    for parameter in operation.parameters.iter_mut().flatten() {
        if let RefOr::T(parameter) = parameter
            && matches!(parameter.parameter_in, ParameterIn::Query)
        {
            parameter
                .extensions
                .get_or_insert_with(Default::default)
                .insert("allowEmptyValue".to_owned(), serde_json::Value::Bool(true));
        }
    }
}

/// Lists what every operation of its kind can answer: 400/413/415/422 where a body is
/// read, 400/404 where a path names a resource, 400/422 where parameters are read, 401
/// where a token is, 429 under the rate limit, 503 wherever a dependency is used.
fn add_shared_statuses(path: &str, operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::{Ref, RefOr, path::ParameterIn};

    let located: Vec<ParameterIn> = operation
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some(p.parameter_in.clone()),
            RefOr::Ref(_) => None,
        })
        .collect();
    let mut statuses = Vec::new();
    if operation.request_body.is_some() {
        statuses.extend(["400", "413", "415", "422"]);
    }
    if located.iter().any(|p| matches!(p, ParameterIn::Path)) {
        statuses.extend(["400", "404"]);
    }
    if located
        .iter()
        .any(|p| matches!(p, ParameterIn::Query | ParameterIn::Header))
    {
        statuses.extend(["400", "422"]);
    }
    if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
        statuses.push("401");
    }
    if !matches!(path, "/health" | "/ready" | "/metrics") {
        statuses.push("429");
    }
    if path != "/health" {
        statuses.push("503");
    }
    for (status, name, _) in SHARED.iter().filter(|(code, _, _)| statuses.contains(code)) {
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
    }
}

/// Adds links from the `status` answer of `POST path` to `targets`, passing the created
/// resource's `field` as their `id` parameter.
fn link(
    spec: &mut utoipa::openapi::OpenApi,
    path: &str,
    status: &str,
    field: &str,
    targets: &[&str],
) {
    use utoipa::openapi::{RefOr, link::LinkBuilder};

    let Some(RefOr::T(response)) = spec
        .paths
        .paths
        .get_mut(path)
        .and_then(|item| item.post.as_mut())
        .and_then(|op| op.responses.responses.get_mut(status))
    else {
        return;
    };
    for target in targets {
        response.links.insert(
            target.to_owned().to_owned(),
            RefOr::T(
                LinkBuilder::new()
                    .operation_id(*target)
                    .parameter("id", format!("$response.body#/{field}"))
                    .description(format!("The `{field}` of the answer is `id` of {target}."))
                    .build(),
            ),
        );
    }
}
