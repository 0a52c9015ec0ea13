"""The GPU-box side: a replica simulator and a launcher for a real llama.cpp replica."""
