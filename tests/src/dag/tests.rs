//! Every rendered shape goes through the real parser; the committed fixtures parse as described.

use super::*;
use sitewarden_shared::dbcopy::{DbCopyParseError, parse_powershell_json};

fn lab() -> DagEmulator {
    DagEmulator::two_sites(&["DB01", "DB02"], &["EX1", "EX2"], &["EX3", "EX4"])
}

#[test]
fn two_sites_parse_in_every_valid_shape() {
    let dag = lab();
    for shape in [Shape::Ps7, Shape::Ps7Unwrapped, Shape::Ps51] {
        let copies = parse_powershell_json(&dag.render(shape)).unwrap();
        assert_eq!(copies.len(), 8, "{shape:?}");
        let active: Vec<_> = copies.iter().filter(|c| c.is_active()).collect();
        assert_eq!(active.len(), 2);
        assert!(active.iter().all(|c| c.server == "EX1"));
        assert!(
            copies
                .iter()
                .all(|c| c.active_database_copy.as_deref() == Some("ex1"))
        );
        let passive = copies.iter().find(|c| c.name == "DB02\\EX4").unwrap();
        assert!(passive.is_good());
        assert_eq!(passive.activation_preference, Some(4));
        assert_eq!(passive.last_inspected_log_time, Some(default_log_time()));
    }
}

#[test]
fn ps51_uses_enum_objects_and_ms_dates() {
    let text = lab().render(Shape::Ps51);
    assert!(text.contains("\"Value\":  \"Healthy\""), "{text}");
    assert!(text.contains("/Date(1795489200000)/"), "{text}");
    let ps7 = lab().render(Shape::Ps7);
    assert!(ps7.contains("\"2026-11-24T03:00:00.0000000Z\""), "{ps7}");
}

#[test]
fn bare_integer_enums_are_refused() {
    let err = parse_powershell_json(&lab().render(Shape::BareIntegerEnums)).unwrap_err();
    assert!(
        matches!(
            err,
            DbCopyParseError::Field {
                field: "Status",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn activate_moves_the_active_copy_everywhere() {
    let dag = lab();
    dag.activate("DB01", "EX3").unwrap();
    assert_eq!(dag.active_server("DB01").as_deref(), Some("EX3"));
    let copies = parse_powershell_json(&dag.render(Shape::Ps7)).unwrap();
    let db01: Vec<_> = copies.iter().filter(|c| c.database == "DB01").collect();
    assert!(
        db01.iter()
            .all(|c| c.active_database_copy.as_deref() == Some("ex3"))
    );
    let status = |s: &str| db01.iter().find(|c| c.server == s).unwrap().status.clone();
    assert_eq!(status("EX3"), CopyStatus::Mounted);
    assert_eq!(status("EX1"), CopyStatus::Healthy);
    assert!(
        copies
            .iter()
            .filter(|c| c.database == "DB02")
            .all(|c| c.active_database_copy.as_deref() == Some("ex1"))
    );
    assert!(dag.activate("DB01", "EX9").is_err());
    dag.activate_all("EX4").unwrap();
    assert_eq!(dag.active_server("DB02").as_deref(), Some("EX4"));
}

#[test]
fn mutators_change_what_the_parser_sees() {
    let dag = lab();
    dag.set_status("DB01", "EX2", CopyStatus::FailedAndSuspended)
        .unwrap();
    dag.set_queues("DB01", "EX3", 12, 80).unwrap();
    dag.suspend_activation("DB01", "EX4", true).unwrap();
    dag.set_content_index("DB02", "EX2", "Failed").unwrap();
    dag.set_error(
        "DB01",
        "EX2",
        Some("The log copier was unable to communicate"),
    )
    .unwrap();
    dag.set_status("DB02", "EX3", CopyStatus::Other("QuantumEntangled".into()))
        .unwrap();
    for shape in [Shape::Ps7, Shape::Ps51] {
        let copies = parse_powershell_json(&dag.render(shape)).unwrap();
        let get = |n: &str| copies.iter().find(|c| c.name == n).unwrap();
        assert!(!get("DB01\\EX2").is_activatable());
        assert!(get("DB01\\EX2").error_message.is_some());
        assert!(get("DB01\\EX3").is_activatable() && !get("DB01\\EX3").is_good());
        assert!(!get("DB01\\EX4").is_activatable());
        assert!(!get("DB02\\EX2").is_good());
        assert_eq!(get("DB02\\EX3").status.as_str(), "QuantumEntangled");
    }
}

#[test]
fn a_single_copy_is_unwrapped_like_convertto_json() {
    let dag = DagEmulator::two_sites(&["DB01"], &["EX1"], &[]);
    for shape in [Shape::Ps51, Shape::Ps7Unwrapped] {
        let text = dag.render(shape);
        assert!(text.trim_start().starts_with('{'), "{shape:?}: {text}");
        assert_eq!(parse_powershell_json(&text).unwrap().len(), 1);
    }
    assert!(dag.render(Shape::Ps7).starts_with('['));
}

#[test]
fn as_command_files_follow_changes() {
    let dir = tempfile::tempdir().unwrap();
    let dag = lab();
    let cmd = dag.as_command(Shape::Ps51, dir.path()).unwrap();
    assert_eq!(cmd[0], "cat");
    let read = || parse_powershell_json(&std::fs::read_to_string(&cmd[1]).unwrap()).unwrap();
    assert_eq!(read()[0].active_database_copy.as_deref(), Some("ex1"));
    dag.activate("DB01", "EX2").unwrap();
    assert_eq!(read()[0].active_database_copy.as_deref(), Some("ex2"));
    let out = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[tokio::test]
async fn serves_copy_status_over_http() {
    let dag = lab();
    let addr = dag.serve().await.unwrap();
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    for shape in ["ps7", "ps51", "ps7-unwrapped"] {
        let text = c
            .get(format!("http://{addr}/copystatus?shape={shape}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(parse_powershell_json(&text).unwrap().len(), 8);
    }
    dag.activate("DB02", "EX3").unwrap();
    let text = c
        .get(format!("http://{addr}/copystatus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let copies = parse_powershell_json(&text).unwrap();
    assert!(
        copies
            .iter()
            .any(|c| c.database == "DB02" && c.server == "EX3" && c.is_active())
    );
    let r = c
        .get(format!("http://{addr}/copystatus?shape=xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(crate::fixture_path(&format!("dbcopy/{name}"))).unwrap()
}

#[test]
fn committed_fixtures_parse_as_described() {
    let ps7 = parse_powershell_json(&fixture("ps7.json")).unwrap();
    let ps51 = parse_powershell_json(&fixture("ps51.json")).unwrap();
    assert_eq!(ps7.len(), 8);
    assert_eq!(ps7, ps51, "both shapes describe the same DAG");
    assert!(
        ps7.iter()
            .any(|c| c.status == CopyStatus::FailedAndSuspended)
    );

    let single = parse_powershell_json(&fixture("single-object.json")).unwrap();
    assert_eq!(single.len(), 1);
    assert!(single[0].is_active());

    let err = parse_powershell_json(&fixture("bare-integer.json")).unwrap_err();
    assert!(err.to_string().contains("bare integer"), "{err}");

    assert!(matches!(
        parse_powershell_json(&fixture("garbage.txt")),
        Err(DbCopyParseError::NotJson(_))
    ));

    let unknown = parse_powershell_json(&fixture("unknown-status.json")).unwrap();
    let odd = unknown
        .iter()
        .find(|c| matches!(c.status, CopyStatus::Other(_)))
        .unwrap();
    assert!(!odd.is_activatable());
}

/// The DAG the committed fixtures describe: a failed copy, a lagging copy, a suspended copy.
fn fixture_dag() -> DagEmulator {
    let dag = lab();
    dag.set_status("DB01", "EX2", CopyStatus::FailedAndSuspended)
        .unwrap();
    dag.set_error(
        "DB01",
        "EX2",
        Some("The Microsoft Exchange Replication service encountered an error while inspecting the logs and database for DB01\\EX2 on startup."),
    )
    .unwrap();
    dag.set_queues("DB02", "EX3", 14, 230).unwrap();
    dag.suspend_activation("DB02", "EX4", true).unwrap();
    dag
}

/// The generated fixtures match what the emulator renders today. Regenerate them with
/// `SITEWARDEN_UPDATE_FIXTURES=1 cargo test -p sitewarden-tests --lib dbcopy_fixtures_are_fresh`.
/// `garbage.txt` and `unknown-status.json` are hand-written.
#[test]
fn dbcopy_fixtures_are_fresh() {
    let dir = crate::fixture_path("dbcopy");
    let single = DagEmulator::two_sites(&["DB01"], &["EX1"], &[]);
    let dag = fixture_dag();
    let expected = [
        ("ps7.json", dag.render(Shape::Ps7)),
        ("ps51.json", dag.render(Shape::Ps51)),
        ("bare-integer.json", dag.render(Shape::BareIntegerEnums)),
        ("single-object.json", single.render(Shape::Ps51)),
    ];
    let update = std::env::var_os("SITEWARDEN_UPDATE_FIXTURES").is_some();
    for (name, text) in expected {
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} is stale; run SITEWARDEN_UPDATE_FIXTURES=1 cargo test -p sitewarden-tests --lib dbcopy_fixtures_are_fresh",
            path.display()
        );
    }
}
