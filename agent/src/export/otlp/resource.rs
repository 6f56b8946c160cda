//! The OTLP resource of an instrumented process: service identity, SDK, host, process and
//! Kubernetes attributes, plus the agent's own `OTEL_RESOURCE_ATTRIBUTES`.
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::attach::TracedProcess;

pub struct ResourceBuilder {
    host: String,
    extra: Vec<(String, String)>,
}

impl ResourceBuilder {
    pub fn new(extra: Vec<(String, String)>) -> Self {
        let host = crate::kernel::local_hostname();
        ResourceBuilder { host, extra }
    }

    pub fn resource(&self, p: &TracedProcess) -> Resource {
        let s = &p.service;
        let mut attrs = vec![
            kv("service.name", &s.name),
            kv("service.instance.id", &s.instance_id),
            kv("telemetry.sdk.name", "beyla"),
            kv("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
            kv("telemetry.sdk.language", p.sdk_language()),
            kv("host.name", &self.host),
            int("process.pid", i64::from(p.pid)),
            kv("process.executable.path", &p.exe.to_string_lossy()),
        ];
        if !s.namespace.is_empty() {
            attrs.push(kv("service.namespace", &s.namespace));
        }
        if let Some(k8s) = &p.k8s {
            attrs.extend(k8s.attributes().map(|(otel, _, v)| kv(otel, v)));
        }
        for (k, v) in &self.extra {
            if !attrs.iter().any(|a| &a.key == k) {
                attrs.push(kv(k, v));
            }
        }
        Resource { attributes: attrs, dropped_attributes_count: 0, entity_refs: Vec::new() }
    }
}

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "github.com/grafana/beyla".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }
}

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
    }
}

pub fn int(key: &str, value: i64) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }) }
}
