//! Best-effort positions of dotted keys in block-style YAML text, for messages about keys
//! that serde did not reject (warnings, cross-field rules). Flow-style values (`[a, b]`,
//! `{k: v}`) are not entered; the position of the deepest key found is returned.

#[derive(Debug, Clone)]
struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Option<Vec<Segment<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']')?;
            out.push(Segment::Index(stripped[..end].parse().ok()?));
            rest = &stripped[end + 1..];
        }
    }
    Some(out)
}

fn is_key_line(text: &str, key: &str) -> bool {
    let rest = if let Some(r) = text.strip_prefix(key) {
        r
    } else if let Some(r) = text.strip_prefix('"').and_then(|t| t.strip_prefix(key)).and_then(|t| t.strip_prefix('"')) {
        r
    } else if let Some(r) = text.strip_prefix('\'').and_then(|t| t.strip_prefix(key)).and_then(|t| t.strip_prefix('\''))
    {
        r
    } else {
        return false;
    };
    rest.trim_start().starts_with(':')
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// 1-based `(line, column)` of `path` (e.g. `discovery.instrument[1].open_ports`) in `text`,
/// or of its deepest ancestor that could be found.
pub(crate) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let mut scope: Vec<Line<'_>> = text
        .lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                return None;
            }
            Some(Line { number: i + 1, indent: raw.len() - trimmed.len(), text: trimmed.trim_end() })
        })
        .collect();
    let mut found = None;
    for segment in segments(path)? {
        let Some(level) = scope.iter().map(|l| l.indent).min() else {
            break;
        };
        let (idx, child) = match segment {
            Segment::Key(key) => {
                let Some(idx) = scope.iter().position(|l| l.indent == level && is_key_line(l.text, key)) else {
                    break;
                };
                (idx, None)
            }
            Segment::Index(n) => {
                let Some(idx) = scope
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.indent == level && is_item(l.text))
                    .map(|(i, _)| i)
                    .nth(n)
                else {
                    break;
                };
                let item = &scope[idx];
                let rest = item.text[1..].trim_start();
                let offset = item.text.len() - rest.len();
                let first =
                    (!rest.is_empty()).then(|| Line { number: item.number, indent: item.indent + offset, text: rest });
                (idx, first)
            }
        };
        let here = &scope[idx];
        found = Some((here.number, here.indent + 1));
        let is_key = child.is_none() && !is_item(here.text);
        let mut next: Vec<Line<'_>> = child.into_iter().collect();
        for l in &scope[idx + 1..] {
            // A block sequence may sit at the same indentation as its key.
            let same_level_item = is_key && l.indent == level && is_item(l.text);
            if l.indent <= level && !same_level_item {
                break;
            }
            next.push(l.clone());
        }
        scope = next;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# comment
discovery:
  instrument:
    - open_ports: 80
      exe_path: \"*nginx*\"
    - k8s_namespace: web
  poll_interval: 1s
routes:
  patterns:
  - /a
  - /b
prometheus_export: {port: 9}
";

    #[test]
    fn locates_nested_keys_and_items() {
        assert_eq!(locate(DOC, "discovery"), Some((2, 1)));
        assert_eq!(locate(DOC, "discovery.poll_interval"), Some((7, 3)));
        assert_eq!(locate(DOC, "discovery.instrument[0].exe_path"), Some((5, 7)));
        assert_eq!(locate(DOC, "discovery.instrument[1]"), Some((6, 5)));
        assert_eq!(locate(DOC, "discovery.instrument[1].k8s_namespace"), Some((6, 7)));
        assert_eq!(locate(DOC, "routes.patterns[1]"), Some((11, 3)));
        // flow style: falls back to the parent key
        assert_eq!(locate(DOC, "prometheus_export.port"), Some((12, 1)));
        assert_eq!(locate(DOC, "nothing"), None);
    }
}
