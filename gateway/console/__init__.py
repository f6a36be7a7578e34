"""The web console at ``/console/`` for the people who are not devices (issue 17): sign-in with a principal's
token, and each role's pages on the same domain functions as the JSON API. docs/console.md describes it."""
