mod auth;

mod cli_run;
mod emulator;
mod fleet;
mod golden;
mod lifecycle;
mod providers;
mod queue;
mod queue_rules;
mod readme;
