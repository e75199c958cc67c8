# Sourced by the other scripts: the toolchain paths the build needs (cargo from rustup,
# LLVM 22 first on PATH for bpf-linker).
export PATH="/usr/lib/llvm-22/bin:$HOME/.cargo/bin:$PATH"
export LLVM_PREFIX=/usr/lib/llvm-22
export LLVM_SYS_221_PREFIX=/usr/lib/llvm-22
