"""The base of the JSON routes' ``response_model``s.

The pages read more than a schema could list (a job's every column, a camera's status counters), so
each reply model names the fields a page relies on and lets the rest through unchanged
(``extra="allow"``): declaring a model never drops what a page reads.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Reply(BaseModel):
    model_config = ConfigDict(extra="allow")
