//! The in-process verification path: cache hit, negative-cache miss and malformed keys,
//! with 1,000 and 1,000,000 cached keys; a true miss that loads the key from the
//! embedded database; and the memory each cached key takes.
//!
//! Run: `cargo bench -p keyhaven-benches` (results and figures in BENCHMARKS.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use keyhaven_core::key_format;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_service::verify::cache::{id_bytes, CachedKey, Owner};
use keyhaven_service::verify::Verifier;
use keyhaven_service::SystemClock;
use rand::SeedableRng;

/// No required permissions.
const NONE: &[&str] = &[];

/// Counts live heap bytes, to measure the cache's memory per key.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn cached(i: usize, org: &Arc<str>, owner: &Arc<Owner>, perms: &Arc<[Box<str>]>) -> CachedKey {
    CachedKey {
        key_id: id_bytes(&format!("01k{:023}", i)),
        revoked: false,
        owner_active: true,
        enabled: true,
        external_id: None,
        metadata: None,
        expires_at_ms: None,
        previous_until_ms: None,
        org_id: org.clone(),
        name: format!("key-{i}").into_boxed_str(),
        owner: owner.clone(),
        permissions: perms.clone(),
        limits: Box::new([]),
        credits: None,
        allowed_cidrs: Box::new([]),
        loaded_at_ms: 0,
    }
}

/// A verifier whose cache holds `n` keys; returns it with one of the keys.
fn setup(rt: &tokio::runtime::Runtime, n: usize) -> (Arc<Verifier>, String, isize) {
    let db = rt.block_on(keyhaven_store::testing::TestDb::sqlite());
    let verifier = Arc::new(Verifier::new(db.store.clone(), Arc::new(SystemClock)));
    std::mem::forget(db); // keep the temporary database for the whole run
    let org: Arc<str> = Arc::from("01korganization000000000000");
    let owner = Arc::new(Owner {
        kind: PrincipalKind::ServiceAccount,
        id: "01kowner0000000000000000000".into(),
        name: "billing".into(),
    });
    let perms: Arc<[Box<str>]> = vec!["read".into(), "write".into()].into();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut probe = String::new();
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..n {
        let secret = key_format::generate("kh", &mut rng);
        verifier.cache.insert(
            key_format::digest(secret.expose()),
            Arc::new(cached(i, &org, &owner, &perms)),
        );
        if i == n / 2 {
            probe = secret.expose().to_string();
        }
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    (verifier, probe, bytes)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("verify");
    for n in [1_000usize, 1_000_000] {
        let (verifier, hit, bytes) = setup(&rt, n);
        println!(
            "cache of {n} keys: {} bytes per cached key",
            bytes / n as isize
        );
        let unknown = key_format::generate("kh", &mut rand::rngs::OsRng)
            .expose()
            .to_string();
        // Put the unknown digest in the negative cache, as the first miss does.
        rt.block_on(verifier.verify(&unknown, NONE, None)).ok();
        let read = vec!["read".to_string()];
        group.bench_with_input(BenchmarkId::new("cache_hit", n), &n, |b, _| {
            b.to_async(&rt)
                .iter(|| async { verifier.verify(&hit, &read, None).await.unwrap() })
        });
        group.bench_with_input(
            BenchmarkId::new("unknown_key_negative_cache", n),
            &n,
            |b, _| {
                b.to_async(&rt)
                    .iter(|| async { verifier.verify(&unknown, NONE, None).await.unwrap() })
            },
        );
        group.bench_with_input(BenchmarkId::new("malformed", n), &n, |b, _| {
            b.to_async(&rt)
                .iter(|| async { verifier.verify("kh_notakey", NONE, None).await.unwrap() })
        });
    }
    group.finish();
    bench_database_load(c, &rt);
}

/// A cache miss for a real key: the record is read from SQLite (key, roles, owner) and
/// cached, then dropped again before the next iteration.
fn bench_database_load(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    use keyhaven_service::api_keys::{CreateApiKey, OwnerRef};
    use keyhaven_service::{Caller, Service};
    let db = rt.block_on(keyhaven_store::testing::TestDb::sqlite());
    let master = keyhaven_service::secrets::MasterKey::from_base64(
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    )
    .expect("master key");
    let service = Service::new(db.store.clone(), Arc::new(SystemClock), master);
    let (org, admin) = rt
        .block_on(service.create_organization("Bench", "bench@example.com", "bench password 123"))
        .expect("organization");
    let caller = Caller::system(org.id.clone(), "bench");
    let (_, _, secret) = rt
        .block_on(service.create_api_key(
            &caller,
            CreateApiKey {
                name: "loaded".into(),
                roles: Some(vec!["read-only".into()]),
                scopes: Some(vec!["read".into()]),
                owner: Some(OwnerRef {
                    kind: PrincipalKind::User,
                    id: admin.id.to_string(),
                }),
                ..Default::default()
            },
        ))
        .expect("key");
    let key = secret.expose().to_string();
    let read = vec!["read".to_string()];
    let verifier = service.verifier().clone();
    c.bench_function("verify/cache_miss_database_load", |b| {
        b.to_async(rt).iter(|| async {
            verifier.cache.clear();
            verifier.verify(&key, &read, None).await.unwrap()
        })
    });
    std::mem::forget(db);
}

criterion_group!(benches, bench);
criterion_main!(benches);
