"""Local tools for AMaaS that never ship to Lambda: ``lambda_local``, a Docker-free Lambda runtime that runs the
functions of a ``sam build`` output the way AWS Lambda runs them."""
