//! The agent's config loader never panics, whatever the file says: random text, and the shipped
//! site1 example with values swapped for hostile ones (empty, huge, negative, wildcards, bad
//! URLs, unreadable secrets, tables where strings belong). Every outcome is a config or an
//! error naming the file. The same loader is fuzzed by `scripts/fuzz` (`agent_config`).

use proptest::prelude::*;
use sitewarden_agent::AgentConfig;
use sitewarden_shared::config::Source;

/// The shipped example without its NATS credential (an environment variable the test does not
/// set), so that mutated copies get past the secrets into the deeper checks.
fn base() -> Vec<String> {
    include_str!("../../examples/agent-site1.toml")
        .lines()
        .filter(|l| !l.contains("password") && !l.starts_with("user"))
        .map(str::to_owned)
        .collect()
}

/// Values that break assumptions.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"\"",
            "0",
            "-1",
            "18446744073709551616",
            "1e400",
            "nan",
            "inf",
            "true",
            "[]",
            "{}",
            "\"0s\"",
            "\"0ms\"",
            "\"1000000000h\"",
            "\"99999999999999999999ms\"",
            "\"a.b\"",
            "\">\"",
            "\"*\"",
            "\"site1\"",
            "\"http://[::1\"",
            "\"https://\"",
            "\"10.0.0.1:99999\"",
            "\"::\"",
            "{ env = \"SITEWARDEN_SURELY_UNSET\" }",
            "{ file = \"/nonexistent/secret\" }",
            "{ env = \"A\", file = \"/x\" }",
            "[\"pwsh\"]",
            "[\"\"]",
            "\"\\u0000\"",
            "\"mail.example.com\"",
        ])
        .prop_map(str::to_owned),
        "\"[^\"\\\\]{0,24}\"",
        "-?[0-9]{1,25}",
    ]
}

fn load(text: &str) {
    let _ = AgentConfig::from_source(&Source::inline("agent.toml", text));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in ".{0,300}") {
        load(&text);
    }

    #[test]
    fn the_example_with_hostile_values_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), hostile_value()), 1..5)
    ) {
        let mut lines = base();
        for (at, value) in edits {
            let i = at.index(lines.len());
            lines[i] = match lines[i].split_once('=') {
                Some((key, _)) if !lines[i].trim_start().starts_with('#') => format!("{key}= {value}"),
                _ => value,
            };
        }
        load(&lines.join("\n"));
    }

    #[test]
    fn the_example_cut_anywhere_never_panics(cut in any::<prop::sample::Index>()) {
        let text = base().join("\n");
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        load(&text[..at]);
    }
}

#[test]
fn the_unmutated_base_loads() {
    // Guards the property tests above: they start from a config that is valid, so their edits
    // are what fails, not the base.
    let text = base().join("\n");
    if let Err(e) = AgentConfig::from_source(&Source::inline("agent.toml", text.as_str())) {
        panic!("{e}");
    }
}
