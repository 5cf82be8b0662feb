"""pi*0.6 with RECAP as a LeRobot policy plugin (`--policy.type=pi_star_recap`)."""

from .configuration_pi_star_recap import PiStarRECAPConfig
from .modeling_pi_star_recap import PiStarRECAPPolicy
from .processor_pi_star_recap import make_pi_star_recap_pre_post_processors
from .sim.config import MetaWorldRecapEnvConfig  # noqa: F401  registers --env.type=metaworld_recap

__all__ = ["PiStarRECAPConfig", "PiStarRECAPPolicy", "make_pi_star_recap_pre_post_processors"]
__version__ = "0.1.0"
