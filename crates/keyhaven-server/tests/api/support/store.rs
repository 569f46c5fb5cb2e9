//! A store wrapper that counts the transactions the application opens, and can be told
//! to panic when one is opened (to test the panic guards).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use keyhaven_store::{Backend, Store, StoreResult, Tx};

/// Counts `begin` and `read` on the store it wraps.
pub struct CountingStore {
    pub inner: Arc<dyn Store>,
    transactions: AtomicU64,
    panic_on_open: AtomicBool,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<CountingStore> {
        Arc::new(CountingStore {
            inner,
            transactions: AtomicU64::new(0),
            panic_on_open: AtomicBool::new(false),
        })
    }

    /// Transactions opened so far.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::SeqCst)
    }

    /// From now on, opening a transaction panics (or stops panicking).
    pub fn panic_on_open(&self, on: bool) {
        self.panic_on_open.store(on, Ordering::SeqCst);
    }

    fn opened(&self) {
        self.transactions.fetch_add(1, Ordering::SeqCst);
        if self.panic_on_open.load(Ordering::SeqCst) {
            panic!("test store: transaction opened while told to panic");
        }
    }
}

#[async_trait]
impl Store for CountingStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        self.opened();
        self.inner.begin().await
    }

    async fn read(&self) -> StoreResult<Box<dyn Tx>> {
        self.opened();
        self.inner.read().await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn migrate(&self) -> StoreResult<()> {
        self.inner.migrate().await
    }

    async fn close(&self) {
        self.inner.close().await
    }

    async fn watch_changes(&self, wake: Arc<tokio::sync::Notify>) {
        self.inner.watch_changes(wake).await
    }
}
