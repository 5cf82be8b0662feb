"""pi*0.6 with RECAP as a LeRobot policy plugin (`--policy.type=pi_star_recap`).

Layout: LeRobot's three contract files at the top, the rest by layer, roughly in the order data flows.
  configuration_pi_star_recap  the policy's options, the `mode` / `iql_preset` presets, validation table
  modeling_pi_star_recap       the LeRobot adapter: batches, targets lookup, action queue, save / load
  processor_pi_star_recap      the pre/post-processing pipelines
  schema, errors               RECAP column names and data-type codes; the data error (shared by all layers)
  data/        columns (a dataset's RECAP columns as read), checks (every problem, before training),
               recap_table (per-frame targets, looked up by frame index), writing (annotate / collect / merge)
  rl/          the RL math on tensors and arrays: iql, value_bins (distributional value), returns (windows
               along an episode), advantage (estimators, thresholds, indicator); method (what a config trains)
  model/       the tensor model: pi_star_recap (one training step: encode, critic, condition, flow loss),
               inputs (Observation, RecapTargets), backbone (VLM), action_expert and flow (flow matching),
               pi05_base, critics (the Critic interface and its four kinds), conditioning (advantage ->
               condition and loss weights), weights (checkpoint weights found and loaded strictly)
  training/    monitor: the metrics lerobot-train logs, non-finite checks, TensorBoard
  evaluation/  policy_loading (LeRobot checkpoints with their processors), predictions (critics over
               dataset episodes), metrics, plots, success_stats (success rates on shared env seeds)
  stock_vlas/  RECAP for stock VLAs: prompt_tags (the advantage in the task prompt), base_policies (demo)
  sim/         the MetaWorld env, its task facts, scripted experts, env pool and collector
  loop/        the RECAP loop as a library (plan, steps, lanes, arms, report)
  cli, commands/  the `pi-star-recap` console script and its subcommands
"""

from .configuration_pi_star_recap import PiStarRECAPConfig
from .modeling_pi_star_recap import PiStarRECAPPolicy
from .processor_pi_star_recap import make_pi_star_recap_pre_post_processors
from .sim.config import MetaWorldRecapEnvConfig  # noqa: F401  registers --env.type=metaworld_recap
from .stock_vlas.prompt_tags import AdvantagePromptStep  # noqa: F401  registers the advantage prompt processor step

__all__ = ["PiStarRECAPConfig", "PiStarRECAPPolicy", "make_pi_star_recap_pre_post_processors"]
__version__ = "0.1.0"
