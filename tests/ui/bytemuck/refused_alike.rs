// The same structs under our derive and under bytemuck's: padding and
// `bool` are refused by both.

mod ours {
    #[derive(shmstore::Shareable, Clone, Copy)]
    #[repr(C)]
    struct Padded {
        small: u8,
        big: u32,
    }

    #[derive(shmstore::Shareable, Clone, Copy)]
    #[repr(C)]
    struct Flag {
        on: bool,
    }
}

mod theirs {
    #[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy)]
    #[repr(C)]
    struct Padded {
        small: u8,
        big: u32,
    }

    #[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy)]
    #[repr(C)]
    struct Flag {
        on: bool,
    }
}

fn main() {}
