//! `keyhaven admin import-keys` on SQLite and PostgreSQL: JSON Lines from a file or
//! standard input, a dry run that writes nothing, a summary, and exit 1 naming every
//! failed line — then the imported keys verify on a running server.

use crate::support::{client, Env};
use serde_json::{json, Value};

on_both_backends!(import_keys_from_a_file_and_from_standard_input);

const KEY_A: &str = "legacy_AAAAaaaaBBBBbbbbCCCCcccc";
const KEY_B: &str = "legacy_DDDDddddEEEEeeeeFFFFffff";

fn lines() -> String {
    [
        json!({"name": "from-file-a", "key": KEY_A, "external_id": "cus_a"}).to_string(),
        String::new(),
        "{not json".to_string(),
        json!({"name": "from-file-b", "key": KEY_B, "tags": ["imported"]}).to_string(),
        json!({"name": "no-secret"}).to_string(),
    ]
    .join("\n")
}

async fn verify(base: &str, key: &str) -> Value {
    client()
        .post(format!("{base}/v1/keys/verify"))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The verify answer once it is VALID — a server on SQLite reads the change log the CLI
/// wrote once a second — or the last answer after a few seconds.
async fn verify_soon(base: &str, key: &str) -> Value {
    let mut v = Value::Null;
    for _ in 0..40 {
        v = verify(base, key).await;
        if v["code"] == "VALID" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    v
}

async fn import_keys_from_a_file_and_from_standard_input(env: Env) {
    let server = env.serve(&[]).await;
    let file = env.root.path().join("keys.jsonl");
    std::fs::write(&file, lines()).unwrap();
    let path = file.to_string_lossy().to_string();

    // A dry run: the same report, nothing written.
    let out = env.run(&["admin", "import-keys", "--dry-run", &path]).await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stdout.contains("would import 2 keys; 2 lines failed"),
        "{}",
        out.stdout
    );
    assert_eq!(verify(&server.base, KEY_A).await["code"], "NOT_FOUND");

    let out = env.run(&["admin", "import-keys", &path]).await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stdout.contains("imported 2 keys; 2 lines failed"),
        "{}",
        out.stdout
    );
    // Each failed line is named, by its number in the file.
    assert!(
        out.stderr.contains("line 3:") && out.stderr.contains("JSON"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("line 5:") && out.stderr.contains("key"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("line 1:") && !out.stderr.contains("line 4:"));
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    // The server sees the new keys within a second (the change log), by their original
    // strings — though KEY_A was refused a moment ago.
    let v = verify_soon(&server.base, KEY_A).await;
    assert_eq!(v["code"], "VALID", "{v}");
    assert_eq!(v["external_id"], "cus_a");
    assert_eq!(verify_soon(&server.base, KEY_B).await["code"], "VALID");
    // Importing again: every line fails (the names and secrets exist), exit 1.
    let out = env.run(&["admin", "import-keys", &path]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.contains("imported 0 keys; 4 lines failed"),
        "{}",
        out.stdout
    );

    // Standard input, all good: exit 0.
    let input = json!({"name": "from-stdin", "key": "legacy_GGGGggggHHHHhhhhIIIIiiii"}).to_string();
    let out = env
        .run_with_stdin(&["admin", "import-keys", "-"], &input)
        .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("imported 1 key; 0 lines failed"),
        "{}",
        out.stdout
    );
    assert_eq!(
        verify_soon(&server.base, "legacy_GGGGggggHHHHhhhhIIIIiiii").await["code"],
        "VALID"
    );
    // A file that does not exist: one clear line.
    let out = env
        .run(&["admin", "import-keys", "/nonexistent/keys.jsonl"])
        .await;
    out.fails_cleanly(&["cannot read"]);
    server.stop().await;
}
