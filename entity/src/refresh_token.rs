//! `refresh_tokens`: the refresh tokens issued, by their SHA-256 (the token itself is
//! never stored).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// The sign-in it descends from: every token a refresh chain issues shares it.
    pub family_id: Uuid,
    /// Hex SHA-256 of the token.
    #[sea_orm(unique)]
    pub token_hash: String,
    pub expires_at: DateTimeUtc,
    /// When it was exchanged for the next token of its family.
    pub spent_at: Option<DateTimeUtc>,
    /// When its family was ended (logout, or reuse of a spent token).
    pub revoked_at: Option<DateTimeUtc>,
    /// The account's session epoch when it was issued: older than the account's is refused
    /// (it was issued while every session was being ended).
    pub epoch: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
