//! Return sites and call sites in a function. Go returns are probed with uprobes on each `RET` (never with
//! uretprobes, which break when Go moves a goroutine's stack), so the code is disassembled.

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};

/// Offsets, relative to `code`'s start, of every `RET` in `code` (the bytes of one function
/// loaded at virtual address `addr`). Decoding runs linearly, which is exact for Go's code:
/// the compiler emits no data in `.text`, and the padding between functions is `INT3`.
pub fn x86_64_ret_offsets(code: &[u8], addr: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.mnemonic() == Mnemonic::Ret {
            out.push(insn.ip() - addr);
        }
    }
    out
}

/// Offsets, relative to `code`'s start, of every direct `CALL` to `target` in `code` (one
/// function loaded at `addr`): where a probe sees the callee's arguments in the caller's
/// context (the probes that must fire only for one caller attach there).
pub fn x86_64_call_offsets(code: &[u8], addr: u64, target: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.mnemonic() == Mnemonic::Call
            && insn.op0_kind() == OpKind::NearBranch64
            && insn.near_branch_target() == target
        {
            out.push(insn.ip() - addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_ret_and_not_c3_bytes_inside_instructions() {
        // sub rsp,0x18 ; mov eax,0xc3 ; test eax,eax ; je +1 ; ret ; add rsp,0x18 ; ret ; int3
        let code = [
            0x48, 0x83, 0xec, 0x18, // sub rsp, 0x18
            0xb8, 0xc3, 0x00, 0x00, 0x00, // mov eax, 0xc3 (a C3 byte that is no RET)
            0x85, 0xc0, // test eax, eax
            0x74, 0x01, // je +1
            0xc3, // ret  (offset 13)
            0x48, 0x83, 0xc4, 0x18, // add rsp, 0x18
            0xc3, // ret  (offset 18)
            0xcc, 0xcc,
        ];
        assert_eq!(x86_64_ret_offsets(&code, 0x401000), vec![13, 18]);
    }

    #[test]
    fn finds_direct_calls_to_one_target() {
        // call +5 (-> 0x100a) ; call +0 (-> 0x100a) ; call rax ; ret
        let code = [0xe8, 0x05, 0x00, 0x00, 0x00, 0xe8, 0x00, 0x00, 0x00, 0x00, 0xff, 0xd0, 0xc3];
        assert_eq!(x86_64_call_offsets(&code, 0x1000, 0x100a), vec![0, 5]);
        assert!(x86_64_call_offsets(&code, 0x1000, 0x2000).is_empty());
    }

    #[test]
    fn no_ret() {
        assert!(x86_64_ret_offsets(&[0x90, 0xcc, 0xcc], 0x1000).is_empty());
    }
}
