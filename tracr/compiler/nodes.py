"""Names of the attributes stored on graph nodes by the compiler passes."""

ID = "ID"
EXPR = "EXPR"
VALUE_SET = "VALUE_SET"
OUTPUT_BASIS = "OUTPUT_BASIS"
MODEL_BLOCK = "MODEL_BLOCK"
