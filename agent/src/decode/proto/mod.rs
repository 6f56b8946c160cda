//! One parser per protocol, grouped by family.
pub mod http1;
pub mod http2;
