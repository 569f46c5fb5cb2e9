//! Argon2id password hashing with OWASP's parameters (m = 19456 KiB, t = 2, p = 1).
//!
//! Each hash takes tens of milliseconds and 19 MiB of memory, so hashing is bounded:
//! at most one hash per CPU core runs at a time (on as many dedicated threads), whatever
//! asks for it. Sign-in, which anyone can call without a credential, is also admitted to
//! the hashing stage only while few are waiting ([`admit`]): past that it answers
//! [`ServiceError::Busy`] at once (503 with `Retry-After`), so a flood of sign-ins
//! costs neither memory nor an ever-growing queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;
use tokio::sync::Semaphore;

use crate::{ServiceError, ServiceResult};

/// Sign-ins that may wait for a hashing slot, per slot (beyond those being hashed).
pub const QUEUE_PER_SLOT: usize = 8;
/// `Retry-After` when sign-in is refused for being busy.
pub const BUSY_RETRY_SECS: u64 = 1;

/// The process's hashing slots and its admission count for sign-ins.
struct Gate {
    /// One per hashing thread: a job is handed to the threads only with a slot, so none
    /// ever waits in their queue.
    slots: Semaphore,
    /// The hashing threads' queue.
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    /// Sign-ins admitted to the hashing stage (hashing or waiting for a slot).
    admitted: AtomicUsize,
    max_admitted: usize,
}

type Job = Box<dyn FnOnce() + Send>;

static GATE: LazyLock<Gate> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // Dedicated threads rather than the blocking pool: each hash allocates 19 MiB, and
    // the allocator keeps freed memory per thread arena, so hashes spread over many
    // short-lived pool threads would leave that much behind in each of their arenas.
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let rx = std::sync::Arc::new(Mutex::new(rx));
    for i in 0..cores {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("keyhaven-argon2-{i}"))
            .spawn(move || loop {
                let job = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a password hashing thread");
        }
    }
    Gate {
        slots: Semaphore::new(cores),
        jobs: Mutex::new(tx),
        admitted: AtomicUsize::new(0),
        max_admitted: cores * (1 + QUEUE_PER_SLOT),
    }
});

/// A sign-in's place in the hashing stage; dropping it gives the place back.
pub struct Admission(());

impl Drop for Admission {
    fn drop(&mut self) {
        GATE.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Admits a sign-in to the hashing stage, or refuses with [`ServiceError::Busy`] when
/// as many are already hashing or waiting as the queue holds.
pub fn admit() -> ServiceResult<Admission> {
    let gate = &*GATE;
    let mut n = gate.admitted.load(Ordering::Acquire);
    loop {
        if n >= gate.max_admitted {
            return Err(ServiceError::Busy(BUSY_RETRY_SECS));
        }
        match gate
            .admitted
            .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Ok(Admission(())),
            Err(now) => n = now,
        }
    }
}

fn params() -> Params {
    // These constants are valid parameters; the fallback is never taken.
    Params::new(19_456, 2, 1, None).unwrap_or_default()
}

#[cfg(test)]
fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
}

thread_local! {
    /// A hashing thread's working memory, kept between hashes: allocating 19 MiB per
    /// hash fragments the allocator's arenas until each holds several times that.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `count` blocks of this thread's working memory (grown once to our own
/// parameters' size; a larger request, from a hash made with other parameters, gets
/// memory of its own that is freed afterwards).
fn with_memory<T>(count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    if count > params().block_count() {
        let mut own = vec![Block::default(); count];
        return f(&mut own);
    }
    MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < count {
            m.resize(count, Block::default());
        }
        f(&mut m[..count])
    })
}

/// Hashes `password` with a fresh salt into a PHC string (on a hashing thread).
fn hash_now(password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    let params = params();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    with_memory(params.block_count(), |blocks| {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password_into_with_memory(password, salt_bytes, &mut out, blocks)
    })?;
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    }
    .to_string())
}

/// Whether `password` matches the PHC string `phc` (on a hashing thread). Whatever the
/// stored hash's parameters, the comparison is constant-time.
fn check_now(password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out_buf = [0u8; Output::MAX_LENGTH];
    let Some(out) = out_buf.get_mut(..expected.len()) else {
        return false;
    };
    let hashed = with_memory(params.block_count(), |blocks| {
        Argon2::new(algorithm, version, params.clone())
            .hash_password_into_with_memory(password, salt, out, blocks)
    });
    hashed.is_ok() && Output::new(out).is_ok_and(|o| o == expected)
}

/// Runs `work` on a hashing thread once a hashing slot is free.
async fn with_slot<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> ServiceResult<T> {
    let gate = &*GATE;
    let _slot = gate
        .slots
        .acquire()
        .await
        .map_err(|e| ServiceError::Internal(format!("password hashing slots closed: {e}")))?;
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    gate.jobs
        .lock()
        .map_err(|_| ServiceError::Internal("password hashing queue poisoned".into()))?
        .send(job)
        .map_err(|_| ServiceError::Internal("password hashing threads stopped".into()))?;
    result
        .await
        .map_err(|e| ServiceError::Internal(format!("password hashing task failed: {e}")))
}

/// Hashes a password into a PHC string.
pub async fn hash(password: &str) -> ServiceResult<String> {
    let password = password.to_string();
    with_slot(move || {
        hash_now(password.as_bytes())
            .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))
    })
    .await?
}

/// A well-formed hash of a password nobody knows, with the same parameters as real
/// ones: checked in place of an unknown email's hash, so unknown emails take as long.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3O1p5L5o0vQ2P0f2mYxg3Gm6sJ2j1a7c1n5lXy0n7yU";

/// Checks a password against a PHC string. `None` as the hash still spends the same
/// effort (against [`DUMMY`]) so unknown emails can't be told apart by timing.
pub async fn verify(password: &str, phc: Option<&str>) -> bool {
    let password = password.to_string();
    let known = phc.is_some();
    let phc = phc.unwrap_or(DUMMY).to_string();
    with_slot(move || check_now(password.as_bytes(), &phc) && known)
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse battery").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery", Some(&h)).await);
        assert!(!verify("wrong", Some(&h)).await);
        assert!(!verify("correct horse battery", None).await);
        assert!(!verify("x", Some("not a phc string")).await);
    }

    #[test]
    fn hashes_are_the_crates_own() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours verifies with the crate's verifier, and the crate's with ours.
        let ours = hash_now(b"pw one").unwrap();
        assert!(argon2()
            .verify_password(b"pw one", &PasswordHash::new(&ours).unwrap())
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = argon2()
            .hash_password(b"pw two", &salt)
            .unwrap()
            .to_string();
        assert!(check_now(b"pw two", &theirs));
        assert!(!check_now(b"pw one", &theirs));
        // Other parameters (a hash made before a change of them) still verify.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw three", &salt)
        .unwrap()
        .to_string();
        assert!(check_now(b"pw three", &small));
        let big = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(32_768, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw four", &salt)
        .unwrap()
        .to_string();
        assert!(check_now(b"pw four", &big));
    }

    #[test]
    fn the_dummy_hash_is_checked_like_a_real_one() {
        // An unparseable dummy would skip the work and make unknown emails fast.
        let parsed = PasswordHash::new(DUMMY).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (19_456, 2, 1)
        );
        assert!(!check_now(b"x", DUMMY));
    }

    #[test]
    fn admission_is_bounded_and_given_back() {
        let max = GATE.max_admitted;
        let mut held = Vec::new();
        // Other tests of this binary may hold a place; admit until refused.
        loop {
            match admit() {
                Ok(a) => held.push(a),
                Err(ServiceError::Busy(secs)) => {
                    assert_eq!(secs, BUSY_RETRY_SECS);
                    break;
                }
                Err(e) => panic!("{e}"),
            }
            assert!(held.len() <= max);
        }
        held.clear();
        assert!(admit().is_ok());
    }
}
