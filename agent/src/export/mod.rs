//! Stage `export`: Prometheus endpoint and the trace printer. Exporters fan out from one
//! queue of span batches.
pub mod printer;
pub mod prometheus;

pub use printer::{PrintFormat, Printer};
pub use prometheus::{bind, serve, Endpoint};
