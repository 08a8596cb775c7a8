//! Google API providers: request building (`wire`), endpoints, credentials (`auth`),
//! input resolution, response parsing and the one classification of every outcome
//! (`error`).
//!
//! reqwest types stay inside this module; callers see `ImageProvider`, `ProviderOutput`
//! and `ProviderError`.

pub mod auth;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod inputs;
pub mod masks;
pub mod response;
pub mod wire;

pub use client::{
    GeminiApiProvider, ImageProvider, ProviderConfigError, VertexProvider, from_config,
};
pub use endpoint::{Method, Target};
pub use error::{ProviderError, TransientKind, classify};
pub use inputs::{InputOptions, InputResolver};
pub use response::{OutputImage, ProviderOutput, ResponseKind, Usage, plan_prompts};
