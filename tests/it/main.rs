
mod auth;
