//! Beyla's `instrumentations` lists (`prometheus_export`, `otel_metrics_export`,
//! `otel_traces_export`): which kinds of operation an exporter reports, by Beyla's names.
use crate::enrich::Span;

/// The names Beyla and OBI accept. Those the agent does not decode yet select nothing, and are
/// accepted so that a Beyla configuration keeps working.
const KNOWN: &[&str] =
    &["*", "http", "grpc", "sql", "redis", "memcached", "kafka", "mongo", "gpu", "mqtt", "nats", "amqp"];

/// What one exporter reports: every instrumentation (`*`, the default) or those listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instrumentations(Option<Vec<&'static str>>);

impl Instrumentations {
    /// The list at config key `key`; an unknown name is an error naming it.
    pub fn new(list: &[String], key: &str) -> Result<Self, (String, String)> {
        let mut names = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let name = name.trim().to_ascii_lowercase();
            let Some(known) = KNOWN.iter().find(|k| **k == name) else {
                return Err((
                    format!("{key}[{i}]"),
                    format!("unknown instrumentation {name:?}; expected one of {}", KNOWN.join(", ")),
                ));
            };
            if *known == "*" {
                return Ok(Instrumentations(None));
            }
            names.push(*known);
        }
        Ok(Instrumentations(Some(names)))
    }

    pub fn selects(&self, span: &Span) -> bool {
        match &self.0 {
            None => true,
            Some(names) => names.contains(&span.instrumentation()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_lists_and_unknown_names() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Instrumentations::new(&list(&["*"]), "k").unwrap(), Instrumentations(None));
        assert_eq!(Instrumentations::new(&list(&["http", "*"]), "k").unwrap(), Instrumentations(None));
        assert_eq!(
            Instrumentations::new(&list(&["HTTP", " redis"]), "k").unwrap(),
            Instrumentations(Some(vec!["http", "redis"]))
        );
        assert_eq!(Instrumentations::new(&list(&[]), "k").unwrap(), Instrumentations(Some(vec![])));
        let (key, msg) =
            Instrumentations::new(&list(&["http", "postgres"]), "prometheus_export.instrumentations").unwrap_err();
        assert_eq!(key, "prometheus_export.instrumentations[1]");
        assert!(msg.contains("\"postgres\"") && msg.contains("sql"), "{msg}");
    }
}
