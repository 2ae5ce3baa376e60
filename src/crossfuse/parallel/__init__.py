"""Making N processes that each hold a shard of the global batch compute what one process would."""

from crossfuse.parallel.batch_shard import (
    batch_shard,
    current_shard,
    draw_for_shard,
    gather_shards,
    global_sum,
)
from crossfuse.parallel.dropout import ShardDropout

__all__ = ["ShardDropout", "batch_shard", "current_shard", "draw_for_shard", "gather_shards", "global_sum"]
