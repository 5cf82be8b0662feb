"""pi*0.6 with RECAP as a LeRobot policy plugin (`--policy.type=pi_star_recap`).

Module map, roughly in the order data flows:
  schema                       RECAP column names, accepted aliases and feature specs (readers, writers)
  recap_data                   a dataset's RECAP columns, checked and turned into per-frame targets
  advantage                    the RL math: IQL losses, value bins, N-step / full-return advantage, indicator
  configuration_pi_star_recap  the policy's options, the `mode` / `iql_preset` presets, validation table
  modeling_pi_star_recap       the LeRobot adapter: batches, targets lookup, action queue, save / load
  recap_model                  the tensor model: one training step (encode, critic, condition, flow loss)
  backbone                     the VLM that encodes camera images, task and state
  action_expert                the action expert transformer and flow matching (loss, sampling, guidance)
  conditioning                 advantage -> expert condition and loss weights; its running statistics
  critics                      the Critic interface: IQL's Q / V, the paper's value, dataset labels, none
  processor_pi_star_recap      the pre/post-processing pipelines
  training_monitor             the training metrics lerobot-train logs, non-finite checks
  checkpoints                  loading policy checkpoints (any policy, pi_star_recap, for fine-tuning)
  predictions                  critics and action sampler run over dataset episodes; advantage indicators
  metrics                      offline evaluation numbers over those predictions
  plots                        PNG plots of those numbers
  paired                       success rates on shared env seeds: intervals and paired tests
  prompt_tags                  RECAP for stock VLAs: the advantage tag in the task prompt (data, step)
  dataset_writing              what annotate / collect / merge share: rewards, episode columns, safe output
  sim/                         the MetaWorld env, its task facts, scripted experts, env pool and collector
  cli, commands/               the `pi-star-recap` console script and its subcommands
"""

from .configuration_pi_star_recap import PiStarRECAPConfig
from .modeling_pi_star_recap import PiStarRECAPPolicy
from .processor_pi_star_recap import make_pi_star_recap_pre_post_processors
from .sim.config import MetaWorldRecapEnvConfig  # noqa: F401  registers --env.type=metaworld_recap
from .stock_vlas.prompt_tags import AdvantagePromptStep  # noqa: F401  registers the advantage prompt processor step

__all__ = ["PiStarRECAPConfig", "PiStarRECAPPolicy", "make_pi_star_recap_pre_post_processors"]
__version__ = "0.1.0"
