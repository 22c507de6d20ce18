//! Rules of the strict fake Graph server, each shown refusing a wrong request and accepting
//! the right one.

mod fake_graph;

use fake_graph::{FakeGraph, FakeOptions};

#[tokio::test]
async fn smoke() {
    let fake = FakeGraph::start(FakeOptions::default()).await;
    fake.put_file("/a/b.txt", b"hello");
    assert_eq!(fake.files().len(), 1);
}
