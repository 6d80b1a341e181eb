"""A PyTorch rank for tests/ddp_cli.rs: joins the default process group from the env:// variables (gloo), does what
`suite dist-check` does — all-reduce [rank + 1] * 4, receive rank 0's broadcast of [7, 8, 9, 10], barrier — and
prints what it got as one JSON line."""
import json

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
t = torch.full((4,), float(rank + 1))
dist.all_reduce(t)
b = torch.tensor([7.0, 8.0, 9.0, 10.0]) if rank == 0 else torch.zeros(4)
dist.broadcast(b, 0)
dist.barrier()
print(json.dumps({"rank": rank, "world_size": world, "all_reduce": t.tolist(), "broadcast": b.tolist()}))
dist.destroy_process_group()
