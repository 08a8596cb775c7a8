mod auth;

mod golden;
mod emulator;
