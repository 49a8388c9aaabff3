"""The pipeline on AWS: events, the handler's configuration, the handler (`logsieve.aws.handler`,
the worker Lambda's entry point), metrics and alerts, the SQS worker, the API's Lambda adapter and
the dead-letter redrive."""

from logsieve.aws.pipeline import handler

__all__ = ["handler"]
