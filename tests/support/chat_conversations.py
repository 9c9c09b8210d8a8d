"""Conversations for the chat-format tests (OpenAI-style messages and tools):
each ends where the assistant answers next, and together they cover system
prompts, merged same-role runs, replies with trailing spaces, tool calls and
results, unicode, and text that spells control tokens."""

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = {"id": "abc123def", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}

# name -> (messages, tools); every conversation ends where the assistant answers next.
CONVERSATIONS = {
    "single turn": ([{"role": "user", "content": "Hello!"}], None),
    "system prompt": ([{"role": "system", "content": "Answer in French."},
                       {"role": "user", "content": "What is a list?"}], None),
    "multi turn": ([{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi there"},
                    {"role": "assistant", "content": "Hello! How can I help?  "},
                    {"role": "user", "content": "What is 2+2?"},
                    {"role": "user", "content": "And 3+3?"},            # merged with the one before
                    {"role": "assistant", "content": "4, then 6."},
                    {"role": "user", "content": "Thanks.\n\nBye"}], None),
    "leading spaces and unicode": ([{"role": "user", "content": "  Grüße, 你好 🙂\ttabs"}], None),
    "tools": ([{"role": "system", "content": "Use tools."},
               {"role": "user", "content": "Hi"},
               {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": None, "tool_calls": [CALL]},
               {"role": "tool", "tool_call_id": "abc123def", "name": "get_weather", "content": "{\"temp\": 21}"},
               {"role": "assistant", "content": "It is 21 degrees."},
               {"role": "user", "content": "Thanks"}], [WEATHER]),
    "tool result last": ([{"role": "user", "content": "Weather in Paris?"},
                          {"role": "assistant", "content": "", "tool_calls": [CALL]},
                          {"role": "tool", "tool_call_id": "abc123def", "name": "get_weather",
                           "content": "sunny"}], [WEATHER]),
    # Text that spells control tokens stays text: mistral-common never parses it.
    "control strings in text": ([{"role": "user", "content": "Write [INST] and </s> literally."}], None),
}
