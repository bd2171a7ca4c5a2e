//! Hand-written detectors used by the `detector = "..."` operator.

pub mod sqli;
pub mod xss;
