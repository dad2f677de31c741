"""A Docker-free local Lambda runtime: the functions of a ``sam build`` run as AWS Lambda runs them.

The real runtime interface client (``awslambdaric``) runs the handler under the template's Python, against a
local Runtime API, with the function code and layers copied read-only where ``/var/task`` and ``/opt`` would
be, Lambda's environment variables, its memory limit and timeout, and its REPORT figures. ``InvokeApi`` lets
one local function invoke another through boto3.
"""

from amaas_cli.lambda_local.errors import LambdaSetupError
from amaas_cli.lambda_local.function import FunctionError, InvokeResult, LambdaInvokeError, LocalLambda, Report
from amaas_cli.lambda_local.invoke_api import InvokeApi
from amaas_cli.lambda_local.template import FunctionSpec, load_function

__all__ = [
    "FunctionError",
    "FunctionSpec",
    "InvokeApi",
    "InvokeResult",
    "LambdaInvokeError",
    "LambdaSetupError",
    "LocalLambda",
    "Report",
    "load_function",
]
