//! HTTP: HTTP/1.x (`h1`) and HTTP/2 with gRPC (`h2`).
pub mod h1;
pub mod h2;
