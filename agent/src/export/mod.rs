//! Stage `export`: Prometheus endpoint, OTLP and the trace printer. Exporters fan out from
//! one queue of span batches.
pub mod instrumentations;
pub mod otlp;
pub mod printer;
pub mod prometheus;
pub mod stage;

pub use instrumentations::Instrumentations;
pub use printer::{PrintFormat, Printer};
pub use prometheus::{bind, serve, Endpoint};
