"""Run stock lerobot-train under Accelerate, then write this rank's parameter and buffer digests.

Usage: accelerate launch --multi_gpu --num_processes 2 ddp_worker.py DIGEST_PREFIX <lerobot-train args>
Every rank writes DIGEST_PREFIX.rank<r>.json; identical files mean identical weights on every rank.
"""

import hashlib
import json
import sys

from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from lerobot.scripts.lerobot_train import train
from lerobot.utils.import_utils import register_third_party_plugins

if __name__ == "__main__":
    register_third_party_plugins()
    prefix = sys.argv[1]
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    accelerator = Accelerator(
        cpu=True,
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    train(accelerator=accelerator)
    policy = accelerator.unwrap_model(accelerator._models[0])
    digests = {
        name: hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        for name, tensor in policy.state_dict().items()
    }
    with open(f"{prefix}.rank{accelerator.process_index}.json", "w") as f:
        json.dump(
            {
                "world_size": accelerator.num_processes,
                "digests": digests,
                "updates": int(policy.model.num_updates),
            },
            f,
        )
