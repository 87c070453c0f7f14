"""One readable file per stage: data, sft, reward, dpo, rloo, ppo, evaluate, pipeline."""
