"""Prometheus objects of the trainer (module level, low-cardinality labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SAMPLES = Counter(
    "hivemind_trainer_samples_total",
    "Learning samples read from the stream, by outcome (accepted or the rejection reason).",
    ["outcome"],
)
TRAIN_LOSS = Gauge("hivemind_trainer_loss", "Training loss of the latest logged step.")
TRAIN_TOKENS_PER_S = Gauge(
    "hivemind_trainer_tokens_per_second", "Trained tokens per second of the running job."
)
TRAIN_STEP = Gauge("hivemind_trainer_step", "Optimizer step of the running job.")
CYCLES = Counter("hivemind_trainer_cycles_total", "Learning cycles, by result.", ["result"])
CYCLES.labels(result="failed")  # at 0 from the start: the alert's increase() sees the first
IS_LEADER = Gauge("hivemind_trainer_is_leader", "1 while this trainer holds the leader lock.")
LEARNING_STREAM_LENGTH = Gauge(
    "hivemind_trainer_stream_length", "Entries in the learning stream (capped)."
)
LEARNING_STREAM_PENDING = Gauge(
    "hivemind_trainer_stream_pending",
    "Learning-stream entries delivered to the trainer group and not yet acknowledged.",
)
NEW_SAMPLES = Gauge(
    "hivemind_trainer_new_samples",
    "Accepted samples not yet trained on (a cycle starts at the threshold).",
)
