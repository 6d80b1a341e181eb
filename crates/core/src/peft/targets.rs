//! Where a domain's models keep the layers each method adapts, and peft's `target_modules` name matching.

/// A domain's conventions for its models, given to [`super::apply_peft`]: default target patterns per method,
/// the head that always trains, and layers that are never adapted. Patterns match as [`super::Targets`] does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeftTargets {
    /// LoRA/DoRA targets when the config names none (BERT: `query`, `value`; Whisper: `q_proj`, `v_proj`).
    pub default_lora: Vec<String>,
    /// (IA)³ targets when the config names none (BERT: `key`, `value`, `output.dense`).
    pub ia3: Vec<String>,
    /// (IA)³ targets whose input is scaled (BERT: `output.dense`), when the config names none.
    pub ia3_feedforward: Vec<String>,
    /// Attention output projections that Houlsby adapters follow (BERT: `attention.output.dense`).
    pub adapter_after_attention: Vec<String>,
    /// Feed-forward down-projections that Houlsby and Pfeiffer adapters follow (BERT: `layer.*.output.dense`).
    pub adapter_after_ffn: Vec<String>,
    /// Variable-name prefixes of the task head (`classifier`, `fc.`): always trained and saved in the adapter
    /// file, never adapted, left out of the base checksum.
    pub head_prefixes: Vec<String>,
    /// Layer-name patterns that are never adapted.
    pub exclude: Vec<String>,
}

impl PeftTargets {
    /// Whether the variable or layer `name` belongs to the head.
    pub fn is_head(&self, name: &str) -> bool {
        self.head_prefixes.iter().any(|p| has_prefix(name, p))
    }

    /// Whether the layer `name` may be adapted: not in the head and not excluded.
    pub fn is_adaptable(&self, name: &str) -> bool {
        !self.is_head(name) && !self.exclude.iter().any(|p| pattern_matches(p, name))
    }
}

/// `prefix` as a dotted-name prefix: `fc` and `fc.` both cover `fc.weight` but `fc` does not cover `fc2.weight`.
pub(crate) fn has_prefix(name: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return false;
    }
    if prefix.ends_with('.') {
        name.starts_with(prefix)
    } else {
        name == prefix || name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.'))
    }
}

/// peft's `target_modules` rule: the pattern equals the name or is a suffix of it at a dot boundary; a `*`
/// component matches any one component.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let pat: Vec<&str> = pattern.trim().split('.').collect();
    let parts: Vec<&str> = name.split('.').collect();
    if pat.len() > parts.len() || pat.iter().any(|c| c.is_empty()) {
        return false;
    }
    let tail = &parts[parts.len() - pat.len()..];
    pat.iter().zip(tail).all(|(p, n)| *p == "*" || p == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_at_dot_boundaries() {
        let q = "bert.encoder.layer.0.attention.self.query";
        assert!(pattern_matches("query", q));
        assert!(pattern_matches("self.query", q));
        assert!(pattern_matches(q, q));
        assert!(!pattern_matches("uery", q));
        assert!(!pattern_matches("attention.query", q));
        let att = "bert.encoder.layer.0.attention.output.dense";
        let ffn = "bert.encoder.layer.0.output.dense";
        assert!(pattern_matches("output.dense", att) && pattern_matches("output.dense", ffn));
        assert!(!pattern_matches("layer.*.output.dense", att));
        assert!(pattern_matches("layer.*.output.dense", ffn));
        assert!(!pattern_matches("a.b.c.d.e.f.g.h.i", ffn));
    }

    #[test]
    fn head_prefixes_respect_components() {
        let t = PeftTargets { head_prefixes: vec!["fc".into(), "classifier.".into()], ..PeftTargets::default() };
        assert!(t.is_head("fc.weight") && t.is_head("fc") && t.is_head("classifier.out_proj.bias"));
        assert!(!t.is_head("fc2.weight") && !t.is_head("layer.fc.weight"));
    }
}
