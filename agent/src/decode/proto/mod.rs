//! One parser per protocol, grouped by family.
pub mod http1;
