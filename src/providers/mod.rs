//! Google API providers.
pub mod auth;
