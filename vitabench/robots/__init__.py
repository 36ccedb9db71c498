"""Real robots: drivers over the robots' own protocols, the robot adapter env, operator, safety, recordings.

``RobotEnv`` (:mod:`vitabench.robots.env`) is the Gymnasium env real-robot suites run in; drivers
are chosen by name (:data:`vitabench.robots.driver.ROBOT_DRIVERS`): ``franka`` (franky-control,
libfranka protocol) and ``piper`` (piper-sdk over CAN).
"""

from vitabench.robots.driver import ROBOT_DRIVERS, RobotDriver, RobotError, RobotState, make_driver

__all__ = ["ROBOT_DRIVERS", "RobotDriver", "RobotError", "RobotState", "make_driver"]
