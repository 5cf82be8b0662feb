"""Every `--policy.<field>` (or `--policy.<group>.<field>`) the loop passes to lerobot-train / lerobot-eval, in one place: when a config
field is renamed, its constant here is the one line to change."""

from __future__ import annotations

VLM_MODEL_NAME = "vlm_model_name"
EXPERT_WIDTH = "expert.width"
EXPERT_DEPTH = "expert.depth"
EXPERT_HEADS = "expert.heads"
CHUNK_SIZE_FIELD = "chunk_size"
N_ACTION_STEPS_FIELD = "n_action_steps"
POLICY_LR = "policy_lr"
SCHEDULER_WARMUP_STEPS = "optim.scheduler_warmup_steps"
RETURN_NORMALIZER = "critic.return_normalizer"
TOKENIZER_PADDING = "backbone.tokenizer_padding"
USE_ADVANTAGE_CONDITIONING = "use_advantage_conditioning"
USE_ADVANTAGE_WEIGHTING = "use_advantage_weighting"
ADVANTAGE_ESTIMATOR = "advantage_estimator"
ADVANTAGE_SOURCE = "advantage_source"
INTERVENTION_WEIGHT = "intervention_weight"
AUTO_WEIGHT = "auto_weight"
DEMO_WEIGHT = "demo_weight"
SUCCESS_ONLY = "success_only"
STATE_CLIP = "normalization.state_clip"
NEGATIVE_WEIGHT = "conditioning.negative_weight"
UNCONDITIONAL_NEGATIVE_WEIGHT = "conditioning.unconditional_negative_weight"
CFG_BETA = "cfg_beta"


def policy(field: str, value: object) -> str:
    """`--policy.<field>=<value>`, booleans written as the CLI parses them (true / false)."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"--policy.{field}={text}"


# The tiny policy the demo trains: the built-in tiny VLM, a small expert, and a policy learning rate
# suited to training from scratch (the config's default policy_lr, 3e-5, assumes a pretrained VLM).
CHUNK_SIZE, N_ACTION_STEPS = 16, 8  # actions predicted / executed per chunk, for every base policy
POLICY_FLAGS = [
    policy(VLM_MODEL_NAME, "tiny"),
    policy(EXPERT_WIDTH, 128),
    policy(EXPERT_DEPTH, 4),
    policy(EXPERT_HEADS, 4),
    policy(CHUNK_SIZE_FIELD, CHUNK_SIZE),
    policy(N_ACTION_STEPS_FIELD, N_ACTION_STEPS),
    policy(POLICY_LR, "3e-4"),
    policy(SCHEDULER_WARMUP_STEPS, 100),
]
# Behaviour cloning: neither advantage weights nor conditioning.
NO_ADVANTAGE = (policy(USE_ADVANTAGE_WEIGHTING, False), policy(USE_ADVANTAGE_CONDITIONING, False))
# A fresh policy without RECAP (stage 1 by behaviour cloning).
NO_CONDITIONING = (policy(USE_ADVANTAGE_CONDITIONING, False),)
# What stage 2 changes over the stage-1 checkpoint: RECAP's critics and advantage conditioning turn on.
RECAP_FLAGS = (policy(USE_ADVANTAGE_CONDITIONING, True),)
# Advantages read from a `value-label` copy of the dataset instead of critics trained with the policy.
FROM_DATASET = policy(ADVANTAGE_SOURCE, "dataset")
# RECAP on a labelled copy (`label_advantages`): the paper's indicators read from the dataset.
LABELLED_RECAP_FLAGS = (*RECAP_FLAGS, policy(ADVANTAGE_ESTIMATOR, "mc_distributional"), FROM_DATASET)
# Advantage-weighted regression: IQL advantage weights exp(A / beta), no conditioning.
AWR_FLAGS = (policy(USE_ADVANTAGE_WEIGHTING, True), policy(USE_ADVANTAGE_CONDITIONING, False))


def guidance(beta: float | None) -> tuple[str, ...]:
    """lerobot-eval flags of classifier-free guidance with `beta` (None: the checkpoint's own)."""
    return () if beta is None else (policy(CFG_BETA, beta),)
