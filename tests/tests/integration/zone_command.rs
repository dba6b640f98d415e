//! `sitewarden-controller zone` against a real nats-server, run as the built binary the way
//! docs/install.md and docs/dns.md show it: before any controller started (the bucket does not
//! exist), `check` says so and `create` makes the bucket and every managed name; a second
//! `create` changes nothing; a record the leader moved is never put back; `list` prints a zone
//! file that `create --zone-file` reads; bad input (a CNAME for an unmanaged name, a managed
//! name to remove, another provider) exits 2 and writes nothing.

use std::path::Path;
use std::process::Output;

use async_nats::jetstream;
use sitewarden_controller::dns::{self, StoredRecord};
use sitewarden_tests::config_toml::{ControllerTable, ControllerToml, NatsTable, Provider};
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::two_site;

const ZONE: &str = "failover.example.com";
const MAIL: &str = "mail.failover.example.com";

/// A builtin-provider controller config for `nats`, written to `dir/controller.toml`.
fn write_config(dir: &Path, nats: &str, provider: Provider) -> std::path::PathBuf {
    let mut toml = ControllerToml {
        controller: ControllerTable {
            id: "ctl-zone".into(),
            listen: "off".into(),
            ..ControllerTable::default()
        },
        nats: NatsTable::servers([nats]),
        provider,
        decisions: two_site::decisions(None, MAIL),
        ..ControllerToml::default()
    };
    toml.decisions.namespaces[0].ttl = Some(std::time::Duration::from_secs(30));
    let path = dir.join("controller.toml");
    std::fs::write(&path, toml.render()).expect("write the config");
    path
}

fn builtin() -> Provider {
    Provider::Builtin {
        zone: ZONE.into(),
        listen: "127.0.0.1:0".into(),
        nameservers: vec!["ns1.failover.example.com".into()],
        soa_email: "hostmaster@example.com".into(),
    }
}

fn zone(config: &Path, args: &[&str]) -> Output {
    std::process::Command::new(sitewarden_tests::workspace_binary("sitewarden-controller"))
        .arg("zone")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .output()
        .expect("run sitewarden-controller zone")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn stored(nats: &NatsServer, key: &str) -> Option<StoredRecord> {
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let store = js.get_key_value(dns::BUCKET).await.ok()?;
    let value = store.get(key).await.expect("read")?;
    Some(serde_json::from_slice(&value).expect("a record"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_create_makes_the_bucket_and_the_names_and_never_undoes_a_move() {
    let nats = NatsServer::start().await.expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &nats.url(), builtin());

    let before = zone(&config, &["check"]);
    assert_eq!(before.status.code(), Some(1), "{}", stdout(&before));
    assert!(
        stdout(&before).contains("does not exist yet; run `sitewarden-controller zone create`"),
        "{}",
        stdout(&before)
    );

    let dry = zone(&config, &["create", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert!(stdout(&dry).contains("would create"), "{}", stdout(&dry));
    assert!(
        stored(&nats, MAIL).await.is_none(),
        "a dry run writes nothing"
    );

    let created = zone(&config, &["create"]);
    assert_eq!(created.status.code(), Some(0), "{}", stderr(&created));
    assert!(
        stdout(&created).contains(&format!("create {MAIL} CNAME mail-rr.example.com ttl 30")),
        "{}",
        stdout(&created)
    );
    let record = stored(&nats, MAIL).await.expect("created");
    assert_eq!(record.content, "mail-rr.example.com");
    assert_eq!((record.epoch, record.generation), (Some(0), Some(0)));

    let check = zone(&config, &["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    assert!(
        stdout(&check).starts_with("ok: all 1 managed names"),
        "{}",
        stdout(&check)
    );

    // The leader moves the name; `create` run again leaves it where it is.
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let store = js.get_key_value(dns::BUCKET).await.expect("bucket");
    let moved = br#"{"content":"mail-site2.example.com","ttl":30,"epoch":4,"generation":9}"#;
    store.put(MAIL, moved.to_vec().into()).await.expect("move");
    let again = zone(&config, &["create"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stdout(&again).contains("exists"), "{}", stdout(&again));
    assert_eq!(
        stored(&nats, MAIL).await.expect("kept").content,
        "mail-site2.example.com"
    );

    // `list` prints a zone file: the SOA, the NS and the CNAME where the leader put it.
    let list = zone(&config, &["list"]);
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    let text = stdout(&list);
    assert!(text.contains("IN SOA ns1.failover.example.com."), "{text}");
    assert!(
        text.contains(&format!("{MAIL}. 30 IN CNAME mail-site2.example.com.")),
        "{text}"
    );

    // An unreadable value is rewritten by `create`; an unmanaged name is reported, then removed.
    store
        .put(MAIL, b"garbage".to_vec().into())
        .await
        .expect("break");
    store
        .put(
            "old.failover.example.com",
            br#"{"content":"x.example.com","ttl":60}"#.to_vec().into(),
        )
        .await
        .expect("old name");
    let broken = zone(&config, &["check"]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        stdout(&broken).contains("cannot be read"),
        "{}",
        stdout(&broken)
    );
    assert!(
        stdout(&broken).contains("zone remove old.failover.example.com"),
        "{}",
        stdout(&broken)
    );
    let repaired = zone(&config, &["create"]);
    assert!(
        stdout(&repaired).contains("rewrite"),
        "{}",
        stdout(&repaired)
    );
    assert_eq!(
        stored(&nats, MAIL).await.expect("rewritten").content,
        "mail-rr.example.com"
    );
    let removed = zone(&config, &["remove", "old.failover.example.com"]);
    assert_eq!(removed.status.code(), Some(0), "{}", stderr(&removed));
    assert!(stored(&nats, "old.failover.example.com").await.is_none());

    let refused = zone(&config, &["remove", MAIL]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("[[namespaces]]"),
        "{}",
        stderr(&refused)
    );
    assert!(
        stored(&nats, MAIL).await.is_some(),
        "a managed name is never removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_file_sets_the_first_target_and_bad_input_writes_nothing() {
    let nats = NatsServer::start().await.expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &nats.url(), builtin());

    let unmanaged = dir.path().join("unmanaged.zone");
    std::fs::write(
        &unmanaged,
        "mail IN CNAME mail-site2.example.com.\nwww IN CNAME web.example.com.\n",
    )
    .expect("write");
    let refused = zone(
        &config,
        &["create", "--zone-file", unmanaged.to_str().expect("utf-8")],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("www.failover.example.com"),
        "{}",
        stderr(&refused)
    );
    assert!(stored(&nats, MAIL).await.is_none(), "nothing written");

    let good = dir.path().join("failover.zone");
    std::fs::write(
        &good,
        "$TTL 300\n@ IN SOA ns1 hostmaster.example.com. (1 3600 600 86400 60)\n\
         mail IN CNAME mail-site2.example.com.\n",
    )
    .expect("write");
    let created = zone(
        &config,
        &["create", "--zone-file", good.to_str().expect("utf-8")],
    );
    assert_eq!(created.status.code(), Some(0), "{}", stderr(&created));
    assert!(
        stdout(&created).contains("(the zone file)"),
        "{}",
        stdout(&created)
    );
    assert_eq!(
        stored(&nats, MAIL).await.expect("created").content,
        "mail-site2.example.com"
    );

    let memory = dir.path().join("memory");
    std::fs::create_dir(&memory).expect("mkdir");
    let other = write_config(&memory, &nats.url(), Provider::Memory);
    let wrong = zone(&other, &["check"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("built-in DNS only"),
        "{}",
        stderr(&wrong)
    );
}
