"""Making N processes that each hold a shard of the global batch compute what one process would."""

from crossfuse.parallel.batch_shard import (
    DrawTape,
    batch_part,
    batch_shard,
    current_shard,
    draw_for_shard,
    gather_shards,
    global_sum,
)
from crossfuse.parallel.dropout import ShardDropout
from crossfuse.parallel.row_blocks import forward_blocks, rows_independent

__all__ = [
    "DrawTape",
    "ShardDropout",
    "batch_part",
    "batch_shard",
    "current_shard",
    "draw_for_shard",
    "forward_blocks",
    "gather_shards",
    "global_sum",
    "rows_independent",
]
