#!/usr/bin/env bash
# Publish throughput with the memory store and the file store (sync always,
# sync batch): slosh-load publish, 32 connections x 100 topics, 8 s each,
# server on CPU 1 and generator on CPU 0. Loopback only; stops by itself.
set -e
B=$(cd "$(dirname "$0")/.." && pwd)/target/release  # build first: cargo build --release -p slosh-cli -p benches
D=$(mktemp -d /var/tmp/slosh-storebench.XXXX)
for mode in memory always batch; do
  case $mode in
    memory) extra="--store memory";;
    always) extra="--store file:$D/always.db --sync always";;
    batch) extra="--store file:$D/batch.db --sync batch";;
  esac
  taskset -c 1 $B/slosh-cli serve --bind 127.0.0.1:8931 --queue 100 $extra 2>/dev/null &
  pid=$!
  sleep 1
  echo "== $mode"
  taskset -c 0 $B/slosh-load publish --conns 32 --topics 100 --secs 8 --preset slosh --base http://127.0.0.1:8931 --server-pid $pid --timeout 60 2>&1 | tail -12
  kill $pid; wait $pid || true
done
ls -la $D; rm -rf $D
