"""HTTP triggers: requests to configured routes on the API listener become API Gateway
events (HTTP API payload 2.0 or REST API 1.0) and the function's answer becomes the HTTP
response, as a Function URL or an API Gateway Lambda proxy integration does."""
