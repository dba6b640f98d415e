//! Slack incoming webhook body (Block Kit): header, what happened, why, what sitewarden did, and
//! the command to act. `text` is the notification fallback Slack shows where blocks cannot be.

use serde_json::{Value, json};

use super::render::{Rendered, truncate};

/// Slack's limit for a section's text.
const SECTION_MAX: usize = 3000;

/// Escapes `&`, `<` and `>` as Slack's mrkdwn requires.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn icon(r: &Rendered) -> &'static str {
    if r.resolved {
        return "✅";
    }
    match r.severity {
        "critical" => "🔴",
        "warning" => "🟠",
        _ => "🔵",
    }
}

/// The JSON body for one message.
pub fn body(r: &Rendered) -> Value {
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(&format!("{} {}", icon(r), r.title), 150), "emoji": true}
        }),
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&format!("*What happened*\n{}", escape(&r.happened)), SECTION_MAX)}
        }),
    ];
    if let Some(why) = &r.why {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": truncate(&format!("*Why:* {}", escape(why)), SECTION_MAX)}]
        }));
    }
    blocks.push(json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate(&format!("*What sitewarden did*\n{}", escape(&r.did)), SECTION_MAX)}
    }));
    if let Some(cmd) = &r.command {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&format!("*To act*\n```{}```", escape(cmd)), SECTION_MAX)}
        }));
    }
    json!({
        "text": truncate(&format!("[{}] {}", r.severity, r.title), SECTION_MAX),
        "blocks": blocks,
    })
}
