mod auth;

mod cli_run;
mod emulator;
mod golden;
mod providers;
