//! The heroics crate's tests, in one binary: interventions, the report and suggestions, on
//! hand-built histories where every number is known in advance.

mod assets;
mod detect;
mod log;
mod report;
mod suggest;
