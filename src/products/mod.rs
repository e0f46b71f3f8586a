//! The product catalog: public reads with paging and search, admin writes (with `ETag` and
//! `If-Match`), soft delete, and the stock ledger's admin side.

pub mod dto;
pub mod routes;
pub mod service;
pub mod stock;
pub mod views;
