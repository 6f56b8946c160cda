//! `otel_traces_export.sampler`: which traces are exported (metrics always count every span).
//! The decision depends only on the trace id and the parent's flag, so every span of a trace
//! gets the same one, in this agent and in any other that samples the same way.
use crate::config::Sampler as SamplerConfig;
use crate::decode::TraceContext;

#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Keeps this fraction of traces, by trace id.
    TraceIdRatio(f64),
    /// Follows the sampled flag of a remote parent; `root` decides for traces starting here.
    ParentBased(Box<Sampler>),
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
    }
}

impl Sampler {
    /// Names as `OTEL_TRACES_SAMPLER`: always_on, always_off, traceidratio, parentbased_*.
    pub fn from_config(c: &SamplerConfig) -> Result<Sampler, String> {
        let Some(name) = c.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) else {
            return Ok(Sampler::default());
        };
        let ratio = || -> Result<f64, String> {
            let arg = match &c.arg {
                None => return Ok(1.0),
                Some(serde_yaml::Value::Number(n)) => n.as_f64(),
                Some(serde_yaml::Value::String(s)) => s.trim().parse().ok(),
                Some(_) => None,
            };
            arg.filter(|r| (0.0..=1.0).contains(r)).ok_or_else(|| "arg must be a ratio between 0 and 1".to_string())
        };
        Ok(match name {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatio(ratio()?),
            "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            "parentbased_traceidratio" => Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(ratio()?))),
            other => {
                return Err(format!(
                    "unknown sampler {other:?}; use always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off or parentbased_traceidratio"
                ))
            }
        })
    }

    pub fn should_sample(&self, ctx: &TraceContext) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::TraceIdRatio(r) => {
                // The lower 8 bytes of the trace id, as the OTel SDKs compare them.
                let low = u64::from_be_bytes(ctx.trace_id[8..].try_into().expect("8 bytes"));
                (low >> 1) < ((*r * (1u64 << 63) as f64) as u64)
            }
            Sampler::ParentBased(root) => match ctx.remote_sampled {
                Some(sampled) => sampled,
                None => root.should_sample(ctx),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, arg: Option<&str>) -> SamplerConfig {
        SamplerConfig { name: Some(name.into()), arg: arg.map(|a| serde_yaml::Value::String(a.into())) }
    }

    fn ctx(seed: u64, remote: Option<bool>) -> TraceContext {
        let mut t = TraceContext { remote_sampled: remote, ..Default::default() };
        t.trace_id[8..].copy_from_slice(&seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        t
    }

    #[test]
    fn parses_names_and_args() {
        assert_eq!(Sampler::from_config(&SamplerConfig::default()).unwrap(), Sampler::default());
        assert_eq!(Sampler::from_config(&cfg("always_off", None)).unwrap(), Sampler::AlwaysOff);
        assert_eq!(Sampler::from_config(&cfg("traceidratio", Some("0.25"))).unwrap(), Sampler::TraceIdRatio(0.25));
        assert_eq!(
            Sampler::from_config(&cfg("parentbased_traceidratio", Some("0.5"))).unwrap(),
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(0.5)))
        );
        assert!(Sampler::from_config(&cfg("traceidratio", Some("2"))).is_err());
        assert!(Sampler::from_config(&cfg("nope", None)).unwrap_err().contains("nope"));
    }

    #[test]
    fn ratio_keeps_about_that_fraction_and_parent_flag_wins() {
        let s = Sampler::TraceIdRatio(0.25);
        let kept = (0..10_000).filter(|i| s.should_sample(&ctx(*i, None))).count();
        assert!((2_200..2_800).contains(&kept), "{kept}");
        assert!(!Sampler::TraceIdRatio(0.0).should_sample(&ctx(1, None)));
        assert!(Sampler::TraceIdRatio(1.0).should_sample(&ctx(1, None)));
        let pb = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        assert!(pb.should_sample(&ctx(1, Some(true))));
        assert!(!pb.should_sample(&ctx(1, None)));
        assert!(!Sampler::default().should_sample(&ctx(1, Some(false))));
        assert!(Sampler::default().should_sample(&ctx(1, None)));
    }
}
