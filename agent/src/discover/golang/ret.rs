//! Return sites, call sites and the body's start in a function. Go returns are probed with uprobes on each `RET`
//! (never with uretprobes, which break when Go moves a goroutine's stack), so the code is disassembled.

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};

/// Instructions searched for the stack check: it comes first, after the spills and call of a
/// `-d=maymorestack` hook when the binary was built with one (nine instructions for four
/// register arguments).
const PROLOGUE_SEARCH: usize = 24;

/// Offset, relative to `code`'s start, of the first instruction past the stack-bound check of
/// a Go function (`CMP rsp|r12, [r14+0x10]` (g.stackguard0) and its conditional jump to the
/// `runtime.morestack` call at the function's end), where the frame is set up (`PUSH rbp` or
/// `SUB rsp, imm`). `None` for a function without the check (`NOSPLIT`).
///
/// Why probes go there and not at the entry: when the stack must grow, or the scheduler asks
/// the goroutine to yield (it sets stackguard0 so that the next check fails: sysmon after 10 ms
/// on the CPU, the GC before scanning a stack), the check jumps to `morestack`, which returns
/// to the function's first instruction. An entry probe then fires twice for one call; the
/// instruction after the check runs once. The argument registers are untouched before it.
pub fn x86_64_body_offset(code: &[u8], addr: u64) -> Option<u64> {
    let end = addr.saturating_add(code.len() as u64);
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut checked = false;
    for _ in 0..PROLOGUE_SEARCH {
        if !decoder.can_decode() {
            return None;
        }
        let insn = decoder.decode();
        if checked {
            // The check's jump goes forward, inside the function, to the morestack call.
            // Go compares unsigned (JLS, JCS): jbe, or jb for the largest frames.
            let jumps_out = matches!(insn.mnemonic(), Mnemonic::Jbe | Mnemonic::Jb)
                && insn.op0_kind() == OpKind::NearBranch64
                && insn.near_branch_target() > insn.ip()
                && insn.near_branch_target() < end;
            if !jumps_out {
                return None;
            }
            let body = decoder.decode();
            let frame = match body.mnemonic() {
                Mnemonic::Push => body.op0_register() == Register::RBP,
                Mnemonic::Sub => body.op0_register() == Register::RSP && body.op1_kind() != OpKind::Register,
                _ => false,
            };
            return frame.then(|| body.ip().wrapping_sub(addr));
        }
        checked = insn.mnemonic() == Mnemonic::Cmp
            && insn.op1_kind() == OpKind::Memory
            && insn.memory_base() == Register::R14
            && insn.memory_index() == Register::None
            && insn.memory_displacement64() == 0x10;
    }
    None
}

/// Offsets, relative to `code`'s start, of every `RET` in `code` (the bytes of one function
/// loaded at virtual address `addr`). Decoding runs linearly, which is exact for Go's code:
/// the compiler emits no data in `.text`, and the padding between functions is `INT3`.
pub fn x86_64_ret_offsets(code: &[u8], addr: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.mnemonic() == Mnemonic::Ret {
            out.push(insn.ip().wrapping_sub(addr));
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
            out.push(insn.ip().wrapping_sub(addr));
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

    /// go1.19's runHandler: `cmp rsp,[r14+0x10]; jbe end; sub rsp,0x50; ...; end: call morestack`.
    #[test]
    fn body_starts_past_the_stack_check() {
        let mut code = vec![
            0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
            0x0f, 0x86, 0x10, 0x00, 0x00, 0x00, // jbe +0x10
            0x48, 0x83, 0xec, 0x50, // sub rsp, 0x50  (offset 10)
        ];
        code.resize(40, 0x90);
        assert_eq!(x86_64_body_offset(&code, 0x621f40), Some(10));
        // go1.23's: push rbp after the check; a larger frame compares r12 = rsp - size.
        let mut code = vec![
            0x4c, 0x8d, 0x64, 0x24, 0xf0, // lea r12, [rsp-0x10]
            0x4d, 0x3b, 0x66, 0x10, // cmp r12, [r14+0x10]
            0x76, 0x10, // jbe +0x10
            0x55, // push rbp  (offset 11)
        ];
        code.resize(40, 0x90);
        assert_eq!(x86_64_body_offset(&code, 0x1000), Some(11));
    }

    #[test]
    fn no_body_offset_without_a_stack_check() {
        // A NOSPLIT function: sub rsp first.
        let code = [0x48, 0x83, 0xec, 0x18, 0x48, 0x83, 0xc4, 0x18, 0xc3];
        assert_eq!(x86_64_body_offset(&code, 0x1000), None);
        // A check whose jump goes backwards is not the prologue's.
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0xfa, 0x55, 0xc3];
        assert_eq!(x86_64_body_offset(&code, 0x1000), None);
        // Nor one followed by anything but the frame's set-up.
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x02, 0x90, 0xc3, 0xcc];
        assert_eq!(x86_64_body_offset(&code, 0x1000), None);
    }

    /// Code whose addresses run past 2^64 (the decoder's instruction pointer wraps): offsets
    /// stay relative to the code, with no overflow.
    #[test]
    fn code_at_the_end_of_the_address_space() {
        // nop at 2^64 - 1; ret at 0; call -5 (to 1) at 1; ret at 6.
        let code = [0x90, 0xc3, 0xe8, 0xfb, 0xff, 0xff, 0xff, 0xc3];
        assert_eq!(x86_64_ret_offsets(&code, u64::MAX), vec![1, 7]);
        assert_eq!(x86_64_call_offsets(&code, u64::MAX, 1), vec![2]);
        // A stack check whose jump wraps to address 3 does not jump forward.
        let check = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x02, 0x55, 0xc3, 0xcc];
        assert_eq!(x86_64_body_offset(&check, u64::MAX - 4), None);
        assert_eq!(x86_64_body_offset(&check, u64::MAX - 9), Some(6));
    }

    #[test]
    fn no_ret() {
        assert!(x86_64_ret_offsets(&[0x90, 0xcc, 0xcc], 0x1000).is_empty());
    }
}
