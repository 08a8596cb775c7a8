//! The Vertex AI / Gemini Developer API stand-in (see DESIGN.md "Emulator").
