//! The product catalog: public reads with paging and search, admin writes, soft delete.

pub mod dto;
pub mod routes;
pub mod service;
